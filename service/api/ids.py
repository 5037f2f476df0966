"""Shopify ids in paths and bodies: ``123`` or ``gid://shopify/<Kind>/123``."""

from __future__ import annotations

import re
from typing import Any

from service.errors import NotFoundError, UnprocessableError

MAX_ID = 2**63 - 1
_GID = re.compile(r"^gid://shopify/(?P<kind>[A-Za-z]+)/(?P<id>\d{1,19})$")


def parse_id(value: str | int, kind: str) -> int | None:
    """The numeric id, or None when ``value`` is not an id of this kind."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = value.strip()
        match = _GID.match(text) if text.startswith("gid:") else None
        if match is not None:
            if match.group("kind") != kind:
                return None
            text = match.group("id")
        if not text.isascii() or not text.isdigit() or len(text) > 19:
            return None
        number = int(text)
    return number if 0 < number <= MAX_ID else None


def path_id(value: str, kind: str) -> int:
    """A path id, or ``404`` (an id that cannot exist names no resource)."""
    number = parse_id(value, kind)
    if number is None:
        raise NotFoundError(f"no such {kind.lower()}")
    return number


def plain_ids(values: list[Any]) -> list[int] | None:
    """The ids when every value is a plain digit string of an id in range (what the order grid
    sends), else None. Reads 250 of them in half the time :func:`parse_id` takes."""
    quick: list[int] = []
    for value in values:
        if type(value) is not str or not value.isdigit() or not value.isascii() or len(value) > 19:
            return None
        digits = int(value)
        if not 0 < digits <= MAX_ID:
            return None
        quick.append(digits)
    return quick


def body_ids(values: list[str | int], kind: str, field: str) -> list[int]:
    """Ids from a request body, or ``422`` naming each bad one.

    Plain digit strings take :func:`plain_ids`; anything else, or any id out of range, takes
    :func:`parse_id` for every value, with its errors."""
    quick = plain_ids(values)
    if quick is not None:
        return quick
    parsed: list[int] = []
    errors: list[dict[str, str]] = []
    for index, value in enumerate(values):
        number = parse_id(value, kind)
        if number is None:
            errors.append({"field": f"{field}[{index}]", "message": f"not a {kind} id"})
        else:
            parsed.append(number)
    if errors:
        raise UnprocessableError(f"invalid {field}", errors=errors[:20])
    return parsed
