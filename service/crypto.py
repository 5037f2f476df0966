"""Keys by purpose: encryption of stored access tokens, the OAuth state cookie, dev session tokens.

Shopify signs webhooks with the raw app secret (HMAC-SHA256 over the body), so a value that
tierline signed with that same secret would be a valid webhook signature for whatever it signed:
anyone who obtained one (starting an install is enough) could forge deliveries. Every value
tierline signs or encrypts therefore uses a key derived for that purpose alone with HKDF-SHA256
and a distinct label; the raw app secret only ever verifies what Shopify signed.

* Tokens are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under HKDF(``TIERLINE_ENCRYPTION_KEY``,
  ``tierline-tokens``), so any long random string works as the setting.
* The OAuth state cookie is signed with HKDF(app secret, ``tierline-oauth-state``).
* Development session tokens are signed with HKDF(app secret, ``tierline-dev-session-token``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

#: HKDF labels, one per purpose. ``tierline-tokens`` predates the others: changing it would make
#: every stored access token unreadable.
TOKENS_LABEL = b"tierline-tokens"
STATE_LABEL = b"tierline-oauth-state"
DEV_SESSION_LABEL = b"tierline-dev-session-token"


@lru_cache(maxsize=32)
def derive_key(secret: str, label: bytes) -> bytes:
    """A 32-byte key for one purpose (``label``), derived from ``secret`` with HKDF-SHA256."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret.encode())


def dev_session_key(app_secret: str) -> bytes:
    """The key of the session tokens the development pages mint (never Shopify's raw secret)."""
    return derive_key(app_secret, DEV_SESSION_LABEL)


class TokenCipher:
    def __init__(self, key_material: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(derive_key(key_material, TOKENS_LABEL)))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """Raises ``ValueError`` when the ciphertext was not made with this key."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode()
        except InvalidToken as exc:
            raise ValueError("token cannot be decrypted with TIERLINE_ENCRYPTION_KEY") from exc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_state(payload: dict[str, Any], secret: str, *, ttl_seconds: int, now: float | None = None) -> str:
    """A compact signed value: ``base64(json).base64(hmac)`` with an expiry inside.

    The HMAC key is derived from ``secret`` for this purpose (:data:`STATE_LABEL`), never the
    secret itself, so the value is no webhook signature.
    """
    body = dict(payload, exp=int((now or time.time()) + ttl_seconds))
    encoded = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    signature = hmac.new(derive_key(secret, STATE_LABEL), encoded.encode(), hashlib.sha256).digest()
    return f"{encoded}.{_b64(signature)}"


def read_state(value: str, secret: str, *, now: float | None = None) -> dict[str, Any] | None:
    """The payload of a value made by :func:`sign_state`, or None if forged, malformed or expired."""
    encoded, _, signature = value.partition(".")
    if not encoded or not signature:
        return None
    expected = hmac.new(derive_key(secret, STATE_LABEL), encoded.encode(), hashlib.sha256).digest()
    try:
        if not hmac.compare_digest(expected, _unb64(signature)):
            return None
        payload = json.loads(_unb64(encoded))
    except (ValueError, TypeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
        return None
    if payload["exp"] < (now or time.time()):
        return None
    return payload
