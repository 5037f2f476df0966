"""Unauthenticated probes: ``/health`` (process), ``/ready`` (database, backlog), ``/metrics``."""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.db import session_scope
from service.domain import inbox
from service.metrics import INBOX_BACKLOG, INBOX_OLDEST_PENDING_SECONDS
from service.runtime import Runtime
from service.schemas import HealthRead, ReadyRead
from service.types import utc_now

logger = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 2.0


@get("/health", summary="Process is up", tags=["operations"], sync_to_thread=False)
def health() -> HealthRead:
    return HealthRead(status="ok")


@get(
    "/ready",
    summary="Database reachable; inbox backlog and lag",
    tags=["operations"],
    # A None value here made /schema/openapi.json answer 500.
    responses={503: ResponseSpec(data_container=ReadyRead, description="Database unreachable")},
)
async def ready(runtime: NamedDependency[Runtime]) -> Response[ReadyRead]:
    try:
        async with (
            asyncio.timeout(READY_TIMEOUT_SECONDS),
            session_scope(runtime.sessionmaker, readonly=True) as session,
        ):
            await session.execute(sa.text("SELECT 1"))
            pending, oldest = await inbox.backlog(session)
    except (TimeoutError, sa.exc.SQLAlchemyError, OSError) as exc:
        logger.warning("ready.database_unreachable", extra={"error": type(exc).__name__})
        return Response(ReadyRead(status="unavailable", database="unreachable"), status_code=503)
    age = (utc_now() - oldest).total_seconds() if oldest is not None else 0.0
    INBOX_BACKLOG.set(pending)
    INBOX_OLDEST_PENDING_SECONDS.set(age)
    return Response(
        ReadyRead(status="ready", database="ok", backlog=pending, oldest_pending_age_seconds=round(age, 3))
    )


@get("/metrics", summary="Prometheus metrics", tags=["operations"], include_in_schema=False)
async def metrics(runtime: NamedDependency[Runtime]) -> Response[bytes]:
    """Counters and histograms of this process, and the inbox gauges read from the database."""
    try:
        async with (
            asyncio.timeout(READY_TIMEOUT_SECONDS),
            session_scope(runtime.sessionmaker, readonly=True) as session,
        ):
            pending, oldest = await inbox.backlog(session)
        INBOX_BACKLOG.set(pending)
        INBOX_OLDEST_PENDING_SECONDS.set((utc_now() - oldest).total_seconds() if oldest is not None else 0.0)
    except (TimeoutError, sa.exc.SQLAlchemyError, OSError) as exc:
        logger.warning("metrics.backlog_unavailable", extra={"error": type(exc).__name__})
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
