"""The exception tree of the Shopify boundary; callers translate it into their own errors."""

from __future__ import annotations


class ShopifyError(Exception):
    """Base class of every error raised by :mod:`shopify_client`."""


class InvalidSignatureError(ShopifyError):
    """An HMAC or session-token signature did not verify."""


class InvalidShopDomainError(ShopifyError):
    """A shop domain is not a ``*.myshopify.com`` host."""


class InvalidSessionTokenError(ShopifyError):
    """An App Bridge session token is malformed, expired, or not for this app."""
