"""``POST /api/stats/customers`` answered without Litestar's routing, for the requests the order
grid sends: an API key, a JSON body of plain digit-string ids (docs/benchmarks.md, issue 18).

Routing, dependency injection, body validation and the response object cost about as much CPU
as the endpoint's statements. This ASGI path, in front of Litestar (``create_app``, inside the
request limits of :mod:`service.limits` like ``webhooks.intake``'s), answers the common request
itself with the same statements and the same bytes as the route
(``service.api.stats.customer_stats``), and hands every other request to the route, untouched or
with its body replayed:

* anything but ``POST /api/stats/customers``, or before the lifespan has built the runtime;
* no ``Authorization: Bearer`` API key (a session token, other schemes, nothing);
* no ``Content-Length``, or one over ``TIERLINE_MAX_BODY``;
* a body that is not a JSON object with one member, ``customerIds`` (or ``customer_ids``), holding
  at most 1000 ids that are all plain digit strings in range;
* a key that finds no installed shop (the route answers the ``401``).

So every refusal (``401``, ``400``, ``413``, ``422``) is the route's own, and the route documents
the endpoint in the OpenAPI schema. What this path does answer (``200``, or ``503``/``500`` from
the database, or the request limits' own errors while it reads the body) is what the route answers
for the same request; ``tests/service/api/test_stats_path.py`` compares the two.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPRequestEvent, Receive, ReceiveMessage, Scope, Send

from service.api.deps import note_key_use
from service.api.ids import plain_ids
from service.api.stats import stats_document
from service.asgi import JSON_HEADERS, Disconnected, read_body, respond, send_problem
from service.domain.api_keys import shop_for_api_key
from service.errors import AppError, unexpected
from service.runtime import Runtime
from service.schemas import MAX_BODY_IDS

PATH = "/api/stats/customers"
_ID_MEMBERS = ("customerIds", "customer_ids")


def _api_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The API key of ``Authorization: Bearer <key>`` (read as ``service.api.deps.authenticate``
    reads it); None for anything else, a session token included."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token or token.count(".") == 2:
                return None
            return token
    return None


def _declared_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _ids(body: bytes) -> list[int] | None:
    """The ids of a body this path answers, else None (the route answers it)."""
    try:
        document = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    if type(document) is not dict or len(document) != 1:
        return None
    ((member, values),) = document.items()
    if member not in _ID_MEMBERS or type(values) is not list or len(values) > MAX_BODY_IDS:
        return None
    return plain_ids(values)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the route, which reads the body this path has read already."""
    sent = False

    async def replay() -> ReceiveMessage:
        nonlocal sent
        if sent:
            return await receive()  # only a disconnect is left to wait for
        sent = True
        message: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": False}
        return message

    return replay


def stats_path(app: ASGIApp, state: Any) -> ASGIApp:
    """``POST /api/stats/customers`` answered here when it can be (above); everything else passed
    to ``app``."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] != PATH or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        runtime = getattr(state, "runtime", None)
        headers = scope["headers"]
        key = _api_key(headers) if isinstance(runtime, Runtime) else None
        declared = _declared_length(headers)
        if runtime is None or key is None or declared is None or declared > runtime.settings.max_body:
            await app(scope, receive, send)
            return
        scope["path_template"] = PATH  # the route label of the request metrics
        try:
            body = await read_body(scope, receive, runtime.settings.max_body)
        except AppError as error:  # the request limits' (408, 503)
            await send_problem(send, error)
            return
        except Disconnected:
            return
        ids = _ids(body)
        if ids is None:
            await app(scope, _replaying(body, receive), send)
            return
        try:
            shop = await shop_for_api_key(runtime.reads, key)
            if shop is not None:
                note_key_use(runtime, shop)
                document = await stats_document(runtime.reads, shop, ids)
        except Exception as exc:
            await send_problem(send, unexpected(exc, PATH))
            return
        if shop is None:
            await app(scope, _replaying(body, receive), send)
            return
        await respond(send, 200, document, JSON_HEADERS)

    return handle
