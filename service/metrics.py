"""Prometheus metrics (SPEC §7). Exposed unauthenticated at ``/metrics``."""

from __future__ import annotations

import re
import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram

DELIVERIES_RECEIVED = Counter(
    "tierline_webhook_deliveries_total",
    "Webhook deliveries received, by topic and intake outcome.",
    ["topic", "outcome"],
)
DELIVERIES_SETTLED = Counter(
    "tierline_webhook_deliveries_settled_total",
    "Deliveries settled by the worker, by topic and status.",
    ["topic", "status"],
)
PROCESSING_SECONDS = Histogram(
    "tierline_webhook_processing_seconds",
    "Time to apply one delivery inside the worker.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_FALLBACKS = Counter(
    "tierline_worker_batch_fallbacks_total",
    "Batches rolled back and applied again one savepoint per delivery, because a delivery raised.",
)
INBOX_BACKLOG = Gauge("tierline_inbox_backlog", "Pending deliveries in the inbox.")
INBOX_OLDEST_PENDING_SECONDS = Gauge(
    "tierline_inbox_oldest_pending_seconds", "Age of the oldest pending delivery."
)


TIER_CHANGES = Counter(
    "tierline_tier_changes_total",
    "Changes of customers' tier of record, by reason.",
    ["reason"],
)
HTTP_SECONDS = Histogram(
    "tierline_http_request_duration_seconds",
    "HTTP request latency, by method, route and status class.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def record_settled(topic: str, status: str, seconds: float) -> None:
    """A delivery left the worker: ``pending`` means a retry was scheduled."""
    DELIVERIES_SETTLED.labels(topic=topic, status="retry" if status == "pending" else status).inc()
    PROCESSING_SECONDS.observe(seconds)


_ID_SEGMENT = re.compile(r"/(?:\d+|gid:/+shopify/[A-Za-z]+/\d+)(?=/|$)")


def route_label(path: str) -> str:
    """A low-cardinality route for a path: ids become ``{id}``; paths outside the app collapse."""
    if not path.startswith(("/api/", "/webhooks/", "/app", "/auth/", "/health", "/ready", "/schema")):
        return "other"
    return _ID_SEGMENT.sub("/{id}", path)


def timing_middleware(app: ASGIApp) -> ASGIApp:
    """ASGI middleware observing each HTTP request's latency in ``HTTP_SECONDS``."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            HTTP_SECONDS.labels(
                method=scope.get("method", "GET"),
                route=route_label(scope.get("path", "")),
                status=f"{status // 100}xx",
            ).observe(time.perf_counter() - started)

    return middleware
