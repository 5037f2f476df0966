"""What an unauthenticated client can make a process hold, bounded (issue 14).

An ASGI wrapper around the whole application (``create_app`` installs it, so it holds in tests
as under ``tierline serve``):

* **Body budget.** Request bodies are read into memory before anything can check who sent them
  (a webhook's signature covers its whole body). Every body in flight, across all connections of
  the process, takes its bytes from one budget (``TIERLINE_BODY_BUDGET``): up front by its
  ``Content-Length``, or chunk by chunk when it has none. A request the budget cannot take is
  answered ``503`` with ``Retry-After`` at once, without reading its body: Shopify retries a
  503, and nothing is acknowledged that was not stored. The bytes are given back when the
  request ends.
* **Body deadline.** Once the application asks for the body, all of it must arrive within
  ``TIERLINE_BODY_TIMEOUT`` seconds, else ``408`` and the connection is closed. Shopify sends a
  whole delivery within its own 5-second budget; a client trickling bytes holds nothing longer.
* **Unread bodies close the connection.** A response sent before its request's body was read
  whole (an early 401, 413, 408 or 503) carries ``Connection: close``: the server does not keep
  reading, or keep alive, a connection whose request it has given up on.
* ``Cache-Control: no-store`` on every ``/api`` response (figures and personal data).

Request heads (their size and how long they take) are bounded earlier, in the HTTP protocol that
``tierline serve`` runs (:mod:`service.server`).
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from service.errors import PROBLEM_JSON, AppError, ServiceUnavailableError
from service.metrics import BODY_BYTES_HELD, REQUESTS_REFUSED

RETRY_AFTER_SECONDS = "5"


class RequestTimeoutError(AppError):
    status_code = 408


class BodyBudgetExceededError(ServiceUnavailableError):
    """The process holds as many request bodies as it may: the client should retry later."""

    def __init__(self) -> None:
        super().__init__(
            "the server is busy reading other requests; retry later",
            headers={"Retry-After": RETRY_AFTER_SECONDS, "Connection": "close"},
        )


class BodyBudget:
    """Bytes of request bodies the process may hold at once, across all connections."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, size: int) -> bool:
        if self.used + size > self.limit:
            return False
        self.used += size
        BODY_BYTES_HELD.inc(size)
        return True

    def give_back(self, size: int) -> None:
        self.used -= size
        BODY_BYTES_HELD.dec(size)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
            return length if length >= 0 else None
    return None


def _has_header(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    return any(key.lower() == name for key, _ in headers)


def _wants_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the request declares a body (a positive length, or chunked transfer)."""
    if _content_length(headers):
        return True
    return any(name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in headers)


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


async def _refuse_busy(scope: Scope, send: Send) -> None:
    """``503`` problem+json with ``Retry-After``, sent before the body is read."""
    body = json.dumps(
        {
            "type": "about:blank",
            "title": HTTPStatus.SERVICE_UNAVAILABLE.phrase,
            "status": 503,
            "detail": "the server is busy reading other requests; retry later",
        }
    ).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", RETRY_AFTER_SECONDS.encode()),
        (b"connection", b"close"),
    ]
    if _is_api(scope.get("path", "")):
        headers.append((b"cache-control", b"no-store"))
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 503,
        "headers": headers,
    }
    content: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(content)


def request_limits(app: ASGIApp, *, budget: BodyBudget, body_timeout: float, max_body: int) -> ASGIApp:
    """Wrap ``app`` with the body budget, the body deadline and the response headers above."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        declared = _content_length(headers)
        body_done = not _wants_body(headers)
        held = 0
        if declared is not None and 0 < declared <= max_body:
            # Larger ones are refused (413) by the application before it reads a byte.
            if not budget.take(declared):
                REQUESTS_REFUSED.labels(reason="body_budget").inc()
                await _refuse_busy(scope, send)
                return
            held = declared
        deadline: float | None = None
        api = _is_api(scope.get("path", ""))

        async def limited_receive() -> ReceiveMessage:
            nonlocal body_done, deadline, held
            if body_done:
                return await receive()  # only a disconnect is left to wait for
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + body_timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                REQUESTS_REFUSED.labels(reason="body_timeout").inc()
                raise RequestTimeoutError(
                    f"the request body did not arrive within {body_timeout:g} seconds",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] == "http.request":
                if declared is None:
                    size = len(message.get("body", b""))
                    if size:
                        if not budget.take(size):
                            REQUESTS_REFUSED.labels(reason="body_budget").inc()
                            raise BodyBudgetExceededError
                        held += size
                if not message.get("more_body", False):
                    body_done = True
            else:
                body_done = True  # http.disconnect
            return message

        async def limited_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = list(message.get("headers", []))
                if not body_done and not _has_header(response_headers, b"connection"):
                    response_headers.append((b"connection", b"close"))
                if api and not _has_header(response_headers, b"cache-control"):
                    response_headers.append((b"cache-control", b"no-store"))
                message["headers"] = response_headers
            await send(message)

        try:
            await app(scope, limited_receive, limited_send)
        finally:
            budget.give_back(held)

    return middleware
