"""Everything that speaks Shopify's protocols. Imports neither ``service`` nor ``webhooks``."""

from shopify_client.errors import (
    InvalidSessionTokenError,
    InvalidShopDomainError,
    InvalidSignatureError,
    ShopifyError,
)
from shopify_client.verify import (
    SessionToken,
    decode_session_token,
    is_valid_shop_domain,
    normalize_shop_domain,
    oauth_hmac,
    oauth_message,
    verify_oauth_hmac,
    verify_webhook_hmac,
    webhook_hmac,
)

__all__ = [
    "InvalidSessionTokenError",
    "InvalidShopDomainError",
    "InvalidSignatureError",
    "SessionToken",
    "ShopifyError",
    "decode_session_token",
    "is_valid_shop_domain",
    "normalize_shop_domain",
    "oauth_hmac",
    "oauth_message",
    "verify_oauth_hmac",
    "verify_webhook_hmac",
    "webhook_hmac",
]
