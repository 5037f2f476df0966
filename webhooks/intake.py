"""``POST /webhooks/shopify``: size → signature → headers → durable insert → ``200``.

The body is never parsed here: it is verified on its raw bytes and stored as it came. Parsing,
validation and effects belong to the worker, after the commit (docs/architecture.md).

Two ways in, one set of rules (:func:`accept`):

* :func:`intake_path`, a plain ASGI callable in front of Litestar (``create_app`` installs it
  inside the request limits of :mod:`service.limits`): it answers ``POST /webhooks/shopify``
  itself, without routing, dependency injection or response models, and passes every other
  request to Litestar. This is the path every delivery takes.
* :func:`receive_webhook`, the same endpoint as a Litestar route: it documents the endpoint in
  the OpenAPI schema and answers when the application runs without the ASGI path.

On PostgreSQL, deliveries of known shops are written by :class:`GroupInsert`: the deliveries that
arrive while an insert is under way go together in the next one (one statement, one commit),
and each is acknowledged only once the statement that stored it has returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from litestar import Request, post
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncEngine

from service.asgi import JSON_HEADERS, Disconnected, read_body, respond, send_problem
from service.db import session_scope
from service.domain import inbox
from service.domain.shops import get_or_create_shop_id
from service.errors import (
    AppError,
    BadRequestError,
    ServiceUnavailableError,
    UnauthorizedError,
    unexpected,
)
from service.metrics import DELIVERIES_RECEIVED, topic_label
from service.runtime import Runtime
from service.schemas import WebhookAck
from shopify_client import signed_for_another_purpose, verify_webhook_hmac
from webhooks.envelope import EnvelopeError, WebhookEnvelope, header

logger = logging.getLogger(__name__)

PATH = "/webhooks/shopify"
RETRY_AFTER_SECONDS = "5"
#: Most deliveries one group insert stores (larger groups wait for the next statement).
MAX_GROUP = 128
#: Most group inserts under way at once (each holds a pooled connection; never more than the pool).
MAX_INSERTS_IN_FLIGHT = 4


class GroupInsert:
    """Group commit for the inbox on PostgreSQL.

    :meth:`store` queues a delivery and waits for the insert that stores it. Up to
    ``max_in_flight`` inserts run at once, each on its own pooled connection in autocommit mode;
    an insert takes every delivery queued when it starts (at most :data:`MAX_GROUP`). With one
    request at a time each delivery has an insert of its own (no waiting for company); under
    load, the deliveries that arrive while the inserts are under way share the next one, so the
    database commits once for many rows.

    Nothing is acknowledged before its statement returned: a failed insert fails every
    delivery in it (each then answered ``503``), except that a group refused for something other
    than the connection is tried again one delivery at a time, so one bad row fails alone.
    """

    def __init__(self, engine: AsyncEngine, *, max_in_flight: int) -> None:
        self._engine = engine
        self._max_in_flight = max(1, max_in_flight)
        self._queue: deque[tuple[inbox.NewDelivery, asyncio.Future[bool]]] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def store(self, new: inbox.NewDelivery, deadline: float) -> bool:
        """True when the delivery's row was created, False for a known webhook id; raises the
        insert's error, or ``TimeoutError`` after ``deadline`` seconds (the insert may still
        complete: Shopify's retry is then answered as a duplicate)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.append((new, future))
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            task = loop.create_task(self._run(), name="tierline-intake-insert")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            async with asyncio.timeout(deadline):
                return await asyncio.shield(future)
        finally:
            future.cancel()  # not yet taken by an insert: it never will be

    async def close(self, grace: float = 5.0) -> None:
        """Wait (at most ``grace`` seconds) for the inserts under way, at shutdown."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)

    async def _run(self) -> None:
        try:
            while self._queue:
                group: list[tuple[inbox.NewDelivery, asyncio.Future[bool]]] = []
                while self._queue and len(group) < MAX_GROUP:
                    item = self._queue.popleft()
                    if not item[1].done():
                        group.append(item)
                if group:
                    await self._store_group(group)
        finally:
            self._in_flight -= 1

    async def _store_group(self, group: Sequence[tuple[inbox.NewDelivery, asyncio.Future[bool]]]) -> None:
        try:
            created = await self._insert([new for new, _ in group])
        except Exception as exc:  # every waiter gets the error (503), nothing is lost
            if len(group) > 1 and isinstance(exc, sa.exc.DBAPIError) and not _is_connection_error(exc):
                for item in group:
                    await self._store_group([item])
                return
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), was_created in zip(group, created, strict=True):
            if not future.done():
                future.set_result(was_created)

    async def _insert(self, group: list[inbox.NewDelivery]) -> list[bool]:
        """One statement; once more on a new connection if a database restart broke the pooled one
        (there is no ping before each checkout: SQLAlchemy then discards the whole pool)."""
        try:
            return await self._insert_once(group)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        return await self._insert_once(group)

    async def _insert_once(self, group: list[inbox.NewDelivery]) -> list[bool]:
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            return await inbox.store_deliveries(conn, group)


def _is_connection_error(exc: sa.exc.DBAPIError) -> bool:
    return exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError)


@dataclass(slots=True)
class Intake:
    """What intake needs of a running process: its runtime and, on PostgreSQL, the group insert."""

    runtime: Runtime
    group: GroupInsert | None = None
    #: Stores given up on after the deadline, still unwinding (kept referenced until they finish).
    abandoned: set[asyncio.Task[bool]] = field(default_factory=set)

    @classmethod
    def start(cls, runtime: Runtime) -> Intake:
        group = None
        if runtime.write_gate is None:  # PostgreSQL (SQLite has one writer: no group commit)
            in_flight = min(MAX_INSERTS_IN_FLIGHT, runtime.settings.db_pool_size)
            group = GroupInsert(runtime.engine, max_in_flight=in_flight)
        return cls(runtime, group)

    async def close(self) -> None:
        if self.group is not None:
            await self.group.close()


async def _store(runtime: Runtime, envelope: WebhookEnvelope, body: bytes) -> bool:
    """SQLite (one writer: intake and the worker take turns), or a shop seen for the first time
    (its row is created in the same transaction as the delivery)."""
    shop_id = runtime.shop_ids.get(envelope.shop_domain)
    gate = runtime.write_gate or contextlib.nullcontext()
    async with gate, session_scope(runtime.sessionmaker) as session:
        if shop_id is None:
            shop_id = await get_or_create_shop_id(session, envelope.shop_domain)
        created = await inbox.store_delivery(session, _new_delivery(envelope, body, shop_id))
    runtime.shop_ids[envelope.shop_domain] = shop_id
    return created


def _new_delivery(envelope: WebhookEnvelope, body: bytes, shop_id: int) -> inbox.NewDelivery:
    return inbox.NewDelivery(
        webhook_id=envelope.webhook_id,
        event_id=envelope.event_id,
        topic=envelope.topic,
        shop_id=shop_id,
        shop_domain=envelope.shop_domain,
        api_version=envelope.api_version,
        triggered_at=envelope.triggered_at,
        body=body,
    )


def _forget(abandoned: set[asyncio.Task[bool]], task: asyncio.Task[bool]) -> None:
    abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def _store_within(intake: Intake, envelope: WebhookEnvelope, body: bytes) -> bool:
    """The delivery stored, or ``TimeoutError`` once the intake budget is spent.

    ``asyncio.timeout`` alone is not enough on the transaction path: after the cancellation, the
    rollback still waits for the blocked driver call (aiosqlite's thread sits in
    ``busy_timeout``), which would push the answer past Shopify's 5 s. The cancelled store unwinds
    in the background; it cannot commit any more, and if it already had, Shopify's retry is
    answered as a duplicate.
    """
    runtime = intake.runtime
    timeout = runtime.settings.intake_timeout_seconds
    shop_id = runtime.shop_ids.get(envelope.shop_domain)
    if intake.group is not None and shop_id is not None:
        return await intake.group.store(_new_delivery(envelope, body, shop_id), timeout)
    task = asyncio.create_task(_store(runtime, envelope, body))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    intake.abandoned.add(task)
    task.add_done_callback(lambda t: _forget(intake.abandoned, t))
    raise TimeoutError


async def accept(intake: Intake, headers: Mapping[str, str], body: bytes) -> bool:
    """Verify, check the headers and store a body already read within the size limit (steps 3 to 6
    of "The life of a webhook", docs/architecture.md): True for a new delivery,
    False for a duplicate; raises :class:`AppError` (401, 400, 503) otherwise."""
    runtime = intake.runtime
    signature = header(headers, "hmac-sha256")
    if not verify_webhook_hmac(body, signature, runtime.settings.webhook_secrets) or (
        # Shopify's signature over a session token or an OAuth query, replayed as a webhook.
        signed_for_another_purpose(body)
    ):
        DELIVERIES_RECEIVED.labels(topic="unverified", outcome="unauthorized").inc()
        raise UnauthorizedError("X-Shopify-Hmac-Sha256 is missing or does not match the body")
    try:
        envelope = WebhookEnvelope.from_headers(headers)
    except EnvelopeError as exc:
        DELIVERIES_RECEIVED.labels(topic="unknown", outcome="bad_request").inc()
        raise BadRequestError(str(exc)) from exc
    log = {"webhook_id": envelope.webhook_id, "topic": envelope.topic, "shop": envelope.shop_domain}
    try:
        created = await _store_within(intake, envelope, body)
    except (TimeoutError, sa.exc.SQLAlchemyError, OSError) as exc:
        DELIVERIES_RECEIVED.labels(topic=topic_label(envelope.topic), outcome="unavailable").inc()
        logger.error("webhook.store_failed", extra=log | {"error": type(exc).__name__})
        raise ServiceUnavailableError(
            "the delivery could not be stored; retry later", headers={"Retry-After": RETRY_AFTER_SECONDS}
        ) from exc
    if created:
        runtime.notify_worker()
        DELIVERIES_RECEIVED.labels(topic=topic_label(envelope.topic), outcome="accepted").inc()
        logger.info("webhook.accepted", extra=log)
        return True
    DELIVERIES_RECEIVED.labels(topic=topic_label(envelope.topic), outcome="duplicate").inc()
    logger.info("webhook.duplicate", extra=log)
    return False


@post(
    PATH,
    status_code=200,
    summary="Receive a Shopify webhook delivery",
    description=(
        "Verifies X-Shopify-Hmac-Sha256 over the raw body, stores the delivery in the inbox and "
        "answers 200 only after it is committed. Duplicates (same X-Shopify-Webhook-Id) answer 200 "
        "and store nothing. 401 bad signature, 400 missing headers, 413 body too large, "
        "503 database unavailable (Shopify retries)."
    ),
    tags=["webhooks"],
)
async def receive_webhook(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> WebhookAck:
    body = await request.body()  # over TIERLINE_MAX_BODY: 413 before anything else
    intake = getattr(request.app.state, "intake", None)
    if not isinstance(intake, Intake):
        intake = Intake(runtime)
    created = await accept(intake, request.headers, body)
    return WebhookAck(status="accepted" if created else "duplicate")


# --- the ASGI path ------------------------------------------------------------------------------

_ACCEPTED = b'{"status":"accepted"}'
_DUPLICATE = b'{"status":"duplicate"}'


def _headers(scope: Scope) -> dict[str, str]:
    """The Shopify request headers (``X-Shopify-*`` and ``Shopify-*``, the only ones intake
    reads) by lower-case name, the first of repeated names, decoded as Latin-1."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name.startswith((b"x-shopify-", b"shopify-")):  # ASGI servers send lower-case names
            headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


def intake_path(app: ASGIApp, state: Any) -> ASGIApp:
    """``POST /webhooks/shopify`` answered here; everything else (and everything before the
    lifespan has built :class:`Intake` on ``state``) passed to ``app``."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"] != PATH or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        intake = getattr(state, "intake", None)
        if not isinstance(intake, Intake):
            await app(scope, receive, send)
            return
        scope["path_template"] = PATH  # the route label of the request metrics
        try:
            body = await read_body(scope, receive, intake.runtime.settings.max_body)
            created = await accept(intake, _headers(scope), body)
        except AppError as error:
            await send_problem(send, error)
            return
        except Disconnected:
            return
        except Exception as exc:
            await send_problem(send, unexpected(exc, PATH))
            return
        await respond(send, 200, _ACCEPTED if created else _DUPLICATE, JSON_HEADERS)

    return handle
