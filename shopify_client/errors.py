"""The exception tree of the Shopify boundary; callers translate it into their own errors.

::

    ShopifyError
    ├── InvalidSignatureError
    ├── InvalidShopDomainError
    ├── InvalidSessionTokenError
    ├── ShopifyTransportError          the request never got an HTTP answer
    ├── ShopifyHTTPError               an unexpected HTTP status
    │   └── OAuthHTTPError             ... from the OAuth token endpoint (also an OAuthError)
    ├── ThrottledError                 HTTP 429 or a THROTTLED GraphQL error
    ├── OAuthError                     the token endpoint's answer is unusable
    ├── GraphQLError                   top-level GraphQL ``errors``
    │   └── UserErrorsError            a mutation's ``userErrors``
    └── BulkOperationError             a bulk operation timed out or its JSONL is malformed
        └── UnknownBulkOperationError  Shopify does not know that operation id
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class ShopifyError(Exception):
    """Base class of every error raised by :mod:`shopify_client`."""


class InvalidSignatureError(ShopifyError):
    """An HMAC or session-token signature did not verify."""


class InvalidShopDomainError(ShopifyError):
    """A shop domain is not a ``*.myshopify.com`` host."""


class InvalidSessionTokenError(ShopifyError):
    """An App Bridge session token is malformed, expired, or not for this app."""


class ShopifyTransportError(ShopifyError):
    """Connecting to Shopify, sending the request or reading the answer failed."""


class ShopifyHTTPError(ShopifyError):
    """Shopify answered with an HTTP status the caller did not expect."""

    def __init__(self, status: int, body_excerpt: str) -> None:
        super().__init__(f"HTTP {status}: {body_excerpt}" if body_excerpt else f"HTTP {status}")
        self.status = status
        self.body_excerpt = body_excerpt


class ThrottledError(ShopifyError):
    """Shopify refused the request for rate limiting; ``retry_after`` is the advised wait in seconds."""

    def __init__(self, retry_after: float, *, status: int | None = None) -> None:
        super().__init__(f"throttled; retry after {retry_after:g} s")
        self.retry_after = retry_after
        self.status = status


class OAuthError(ShopifyError):
    """The OAuth token endpoint refused a request or answered with something unusable."""


class OAuthHTTPError(OAuthError, ShopifyHTTPError):
    """The OAuth token endpoint answered with a non-2xx status (a bad code or session token: 400)."""


class GraphQLError(ShopifyError):
    """The Admin API answered with top-level GraphQL ``errors``."""

    def __init__(self, messages: Sequence[str], errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__("; ".join(messages) or "GraphQL error")
        self.messages = list(messages)
        self.errors = [dict(error) for error in errors]


class UserErrorsError(GraphQLError):
    """A mutation answered with ``userErrors`` (each a ``{field, message}`` mapping)."""

    def __init__(self, user_errors: Sequence[Mapping[str, Any]]) -> None:
        messages = [_user_error_message(error) for error in user_errors]
        super().__init__(messages, user_errors)
        self.user_errors = self.errors


class BulkOperationError(ShopifyError):
    """A bulk operation did not finish in time, or its JSONL result cannot be read."""


class UnknownBulkOperationError(BulkOperationError):
    """Shopify does not know the bulk operation asked about (another install's, or purged)."""


def _user_error_message(error: Mapping[str, Any]) -> str:
    message = str(error.get("message") or "user error")
    field = error.get("field")
    if isinstance(field, list) and field:
        return f"{'.'.join(str(part) for part in field)}: {message}"
    return message
