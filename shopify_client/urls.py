"""Where a shop's endpoints live: ``https://{shop}`` unless a stand-in Shopify is configured.

Pure functions. Every call tierline makes to a shop (token endpoint, Admin GraphQL) starts from
:func:`shop_origin`; a template other than the default (``http://127.0.0.1:9010/{shop}``) points
those calls at a local stand-in for development and tests.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from shopify_client.verify import normalize_shop_domain

DEFAULT_SHOP_ORIGIN = "https://{shop}"
SHOP_PLACEHOLDER = "{shop}"


def check_origin_template(template: str) -> str:
    """The template without a trailing slash; ``ValueError`` unless it is an http(s) URL with
    ``{shop}`` in it and no query or fragment."""
    value = template.strip().rstrip("/")
    if SHOP_PLACEHOLDER not in value:
        raise ValueError("must contain {shop}")
    parts = urlsplit(value.replace(SHOP_PLACEHOLDER, "shop.myshopify.com"))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http:// or https:// URL")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return value


def shop_origin(shop: str, template: str = DEFAULT_SHOP_ORIGIN) -> str:
    """The origin of ``shop``'s endpoints: ``https://x.myshopify.com`` by default."""
    return check_origin_template(template).replace(SHOP_PLACEHOLDER, normalize_shop_domain(shop))
