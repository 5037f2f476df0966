"""Prometheus metrics (SPEC §7). Exposed unauthenticated at ``/metrics``."""

from __future__ import annotations

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
INBOX_BACKLOG = Gauge("tierline_inbox_backlog", "Pending deliveries in the inbox.")
INBOX_OLDEST_PENDING_SECONDS = Gauge(
    "tierline_inbox_oldest_pending_seconds", "Age of the oldest pending delivery."
)


def record_settled(topic: str, status: str, seconds: float) -> None:
    DELIVERIES_SETTLED.labels(topic=topic, status=status).inc()
    PROCESSING_SECONDS.observe(seconds)
