"""What the plain ASGI paths in front of Litestar's routing share (``webhooks.intake`` for
``POST /webhooks/shopify``, :mod:`service.api.stats_path` for ``POST /api/stats/customers``):
reading a body within its limit, answering bytes, and rendering an :class:`AppError` as the same
problem+json the Litestar routes answer (``service.errors``)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec
from litestar.types import Receive, Scope, Send

from service.errors import PROBLEM_JSON, AppError, BadRequestError, PayloadTooLargeError, bounded_errors

JSON_HEADERS = [(b"content-type", b"application/json")]


class Disconnected(Exception):
    """The client went away before its body was read whole."""


async def read_body(scope: Scope, receive: Receive, max_body: int) -> bytes:
    """The whole request body; ``413`` when it is (or declares to be) over ``max_body`` bytes,
    before reading what is beyond the limit."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise BadRequestError("Content-Length is not a number") from None
            if declared > max_body:
                raise PayloadTooLargeError("Request Entity Too Large")
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > max_body:
                raise PayloadTooLargeError("Request Entity Too Large")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_problem(send: Send, error: AppError) -> None:
    """The error as RFC 9457 problem+json, as ``service.errors`` renders it for Litestar routes."""
    document: dict[str, Any] = {
        "type": "about:blank",
        "title": error.title or HTTPStatus(error.status_code).phrase,
        "status": error.status_code,
        "detail": error.detail,
    }
    if error.errors:
        document["errors"] = bounded_errors(error.errors)
    headers = [(b"content-type", PROBLEM_JSON.encode())]
    headers += [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items()
    ]
    await respond(send, error.status_code, msgspec.json.encode(document), headers)
