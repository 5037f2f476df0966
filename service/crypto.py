"""Encryption of stored access tokens and signing of the OAuth state cookie.

Tokens are encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from
``TIERLINE_ENCRYPTION_KEY`` with HKDF-SHA256, so any long random string works as the setting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class TokenCipher:
    def __init__(self, key_material: str) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"tierline-tokens").derive(
            key_material.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

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
    """A compact signed value: ``base64(json).base64(hmac)`` with an expiry inside."""
    body = dict(payload, exp=int((now or time.time()) + ttl_seconds))
    encoded = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    signature = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
    return f"{encoded}.{_b64(signature)}"


def read_state(value: str, secret: str, *, now: float | None = None) -> dict[str, Any] | None:
    """The payload of a value made by :func:`sign_state`, or None if forged, malformed or expired."""
    encoded, _, signature = value.partition(".")
    if not encoded or not signature:
        return None
    expected = hmac.new(secret.encode(), encoded.encode(), hashlib.sha256).digest()
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
