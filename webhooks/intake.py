"""``POST /webhooks/shopify``: size → signature → headers → durable insert → ``200``.

The body is never parsed here: it is verified on its raw bytes and stored as it came. Parsing,
validation and effects belong to the worker, after the commit (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import sqlalchemy as sa
from litestar import Request, post
from litestar.di import NamedDependency

from service.db import session_scope
from service.domain import inbox
from service.domain.shops import get_or_create_shop_id
from service.errors import BadRequestError, ServiceUnavailableError, UnauthorizedError
from service.metrics import DELIVERIES_RECEIVED, topic_label
from service.runtime import Runtime
from service.schemas import WebhookAck
from shopify_client import signed_for_another_purpose, verify_webhook_hmac
from webhooks.envelope import EnvelopeError, WebhookEnvelope, header

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"


async def _store(runtime: Runtime, envelope: WebhookEnvelope, body: bytes) -> bool:
    shop_id = runtime.shop_ids.get(envelope.shop_domain)
    if shop_id is not None and runtime.write_gate is None:
        return await _insert_autocommit(runtime, _new_delivery(envelope, body, shop_id))
    # SQLite (one writer: intake and the worker take turns), or a shop seen for the first time
    # (its row is created in the same transaction as the delivery).
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


async def _insert_autocommit(runtime: Runtime, new: inbox.NewDelivery) -> bool:
    """PostgreSQL: the insert alone, in autocommit mode (one round trip, durable on return).

    A pooled connection that a database restart has broken fails on first use (there is no
    ping before each checkout): SQLAlchemy then discards the pool, and the insert is tried once
    more on a new connection, still within the intake deadline.
    """
    try:
        return await _insert_once(runtime, new)
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    return await _insert_once(runtime, new)


async def _insert_once(runtime: Runtime, new: inbox.NewDelivery) -> bool:
    async with runtime.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        return await inbox.store_delivery(conn, new)


#: Stores given up on after the deadline, still unwinding (kept referenced until they finish).
_abandoned: set[asyncio.Task[bool]] = set()


def _forget(task: asyncio.Task[bool]) -> None:
    _abandoned.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def _store_within(runtime: Runtime, envelope: WebhookEnvelope, body: bytes) -> bool:
    """:func:`_store`, or ``TimeoutError`` once the intake budget is spent.

    ``asyncio.timeout`` alone is not enough: after the cancellation, the transaction's rollback
    still waits for the blocked driver call (aiosqlite's thread sits in ``busy_timeout``), which
    would push the answer past Shopify's 5 s. The cancelled store unwinds in the background; it
    cannot commit any more, and if it already had, Shopify's retry is answered as a duplicate.
    """
    task = asyncio.create_task(_store(runtime, envelope, body))
    try:
        done, _ = await asyncio.wait({task}, timeout=runtime.settings.intake_timeout_seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_forget)
    raise TimeoutError


@post(
    "/webhooks/shopify",
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
    signature = header(request.headers, "hmac-sha256")
    if not verify_webhook_hmac(body, signature, runtime.settings.webhook_secrets) or (
        # Shopify's signature over a session token or an OAuth query, replayed as a webhook.
        signed_for_another_purpose(body)
    ):
        DELIVERIES_RECEIVED.labels(topic="unverified", outcome="unauthorized").inc()
        raise UnauthorizedError("X-Shopify-Hmac-Sha256 is missing or does not match the body")
    try:
        envelope = WebhookEnvelope.from_headers(request.headers)
    except EnvelopeError as exc:
        DELIVERIES_RECEIVED.labels(topic="unknown", outcome="bad_request").inc()
        raise BadRequestError(str(exc)) from exc
    log = {"webhook_id": envelope.webhook_id, "topic": envelope.topic, "shop": envelope.shop_domain}
    try:
        created = await _store_within(runtime, envelope, body)
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
        return WebhookAck(status="accepted")
    DELIVERIES_RECEIVED.labels(topic=topic_label(envelope.topic), outcome="duplicate").inc()
    logger.info("webhook.duplicate", extra=log)
    return WebhookAck(status="duplicate")
