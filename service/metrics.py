"""Prometheus metrics (docs/operations.md). Exposed unauthenticated at ``/metrics``.

Every label value comes from a fixed set, whatever a client sends: a series is kept for ever, so
a label made from a raw path, method or topic would let anyone grow memory and the scrape
without bound. HTTP timings are labelled by the route template that matched
(``/api/customers/{customer_id:str}``), ``unmatched`` when none did; methods outside the
standard ones become ``other``; topics outside the handled ones become ``other``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

from prometheus_client import Counter, Gauge, Histogram

from service.topics import HANDLED_TOPICS

if TYPE_CHECKING:
    # Only the HTTP middleware needs these; the worker imports this module without Litestar.
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

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
REQUESTS_REFUSED = Counter(
    "tierline_http_requests_refused_total",
    "Requests or connections refused by the limits on what a client can make the process hold: "
    "body_budget (503), body_timeout (408), head_too_large (431), head_timeout (408).",
    ["reason"],
)
BODY_BYTES_HELD = Gauge(
    "tierline_http_body_bytes_held",
    "Bytes of request bodies in flight, taken from the TIERLINE_BODY_BUDGET of this process.",
)
HTTP_SECONDS = Histogram(
    "tierline_http_request_duration_seconds",
    "HTTP request latency, by method, route and status class.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
WRITEBACK_QUEUED = Counter(
    "tierline_writeback_queued_total",
    "Write-back rows that became pending (a new desired state for a Shopify customer or order), by kind.",
    ["kind"],
)
WRITEBACK_SENT = Counter(
    "tierline_writeback_sent_total",
    "Write-backs that changed something at Shopify, by kind.",
    ["kind"],
)
WRITEBACK_UNCHANGED = Counter(
    "tierline_writeback_unchanged_total",
    "Write-backs settled without a write: Shopify already held the desired state, by kind.",
    ["kind"],
)
WRITEBACK_FAILED = Counter(
    "tierline_writeback_failed_total",
    "Write-backs marked failed (after the last attempt, or the resource is gone at Shopify), by kind.",
    ["kind"],
)
WRITEBACK_THROTTLE_WAITS = Counter(
    "tierline_writeback_throttle_waits_total",
    "Times the sender waited for the shop's shared Admin API cost bucket before a request.",
)
WRITEBACK_THROTTLE_SECONDS = Counter(
    "tierline_writeback_throttle_wait_seconds_total",
    "Seconds the sender waited for the shop's shared Admin API cost bucket.",
)

#: The label of requests that matched no route (404, 405), whatever their path.
UNMATCHED_ROUTE = "unmatched"
#: The label of a method outside :data:`HTTP_METHODS`, and of a topic tierline does not handle.
OTHER = "other"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def topic_label(topic: str) -> str:
    """A handled topic as it is; any other topic (signed, so rare) as ``other``."""
    return topic if topic in HANDLED_TOPICS else OTHER


def record_settled(topic: str, status: str, seconds: float) -> None:
    """A delivery left the worker: ``pending`` means a retry was scheduled."""
    DELIVERIES_SETTLED.labels(
        topic=topic_label(topic), status="retry" if status == "pending" else status
    ).inc()
    PROCESSING_SECONDS.observe(seconds)


def route_label(scope: Scope) -> str:
    """The route template the router matched (set in the scope by Litestar), else ``unmatched``."""
    template = scope.get("path_template")
    return template if isinstance(template, str) and template else UNMATCHED_ROUTE


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else OTHER


def timing_middleware(app: ASGIApp) -> ASGIApp:
    """ASGI middleware observing each HTTP request's latency in ``HTTP_SECONDS``.

    It wraps the whole application (routing included), so requests that match no route are
    observed too, under ``unmatched``.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if cast(str, scope["type"]) != "http":
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
                method=method_label(str(scope.get("method", "GET"))),
                route=route_label(scope),
                status=f"{min(max(status // 100, 1), 5)}xx",
            ).observe(time.perf_counter() - started)

    return middleware
