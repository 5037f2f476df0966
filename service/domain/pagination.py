"""Opaque keyset cursors, bound to the sort and filters they were made for (docs/api.md)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from service.errors import BadRequestError

MAX_LIMIT = 250
DEFAULT_LIMIT = 50


def encode_cursor(kind: str, filters: dict[str, Any], position: list[Any]) -> str:
    raw = json.dumps({"k": kind, "f": filters, "p": position}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, filters: dict[str, Any]) -> list[Any]:
    """The keyset position in a cursor; ``400`` when malformed or made for another query."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or data.get("k") != kind or data.get("f") != filters:
            raise BadRequestError("cursor does not match this query's sort and filters")
        position = data["p"]
        if not isinstance(position, list) or not position:
            raise TypeError
        return position
    except BadRequestError:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequestError("malformed cursor") from exc
