"""``webhooks.batch.plan``: claimed deliveries → runs, singles, rejected, ignored (no database).

What a batch applied whole must leave is tested end to end in ``test_batched.py``; here, only how
a batch is cut into steps.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from service.domain.inbox import ClaimedDelivery
from service.types import utc_now
from tests.support.payloads import fulfillment_event_payload, fulfillment_payload, order_payload
from webhooks import batch
from webhooks.handlers import build_router

ROUTER = build_router()
_ids = itertools.count(1)


def claimed(topic: str, payload: Any, *, shop_id: int = 1) -> ClaimedDelivery:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    n = next(_ids)
    return ClaimedDelivery(
        n, f"w{n}", topic, shop_id, f"shop{shop_id}.myshopify.com", None, utc_now(), 0, body
    )


def order(order_id: int, *, shop_id: int = 1, topic: str = "orders/create") -> ClaimedDelivery:
    return claimed(topic, order_payload(order_id), shop_id=shop_id)


def shape(steps: list[batch.Step]) -> list[tuple[Any, ...]]:
    """Each step as (kind, delivery ids) (and ``deferred`` for singles)."""
    out: list[tuple[Any, ...]] = []
    for step in steps:
        if isinstance(step, batch.Run):
            out.append((step.kind.name, [i.delivery.id for i in step.items]))
        elif isinstance(step, batch.Single):
            out.append(("single", step.item.delivery.id, step.deferred))
        elif isinstance(step, batch.Rejected):
            out.append(("rejected", step.delivery.id))
        else:
            out.append(("ignored", step.delivery.id))
    return out


class TestRuns:
    def test_snapshots_of_distinct_orders_are_one_run(self) -> None:
        deliveries = [order(1), order(2, topic="orders/updated"), order(3, topic="orders/paid")]
        assert shape(batch.plan(deliveries, ROUTER)) == [("order snapshots", [d.id for d in deliveries])]

    def test_a_repeated_order_starts_the_next_run(self) -> None:
        a, b, c = order(1), order(2), order(1, topic="orders/updated")
        assert shape(batch.plan([a, b, c], ROUTER)) == [
            ("order snapshots", [a.id, b.id]),
            ("order snapshots", [c.id]),
        ]

    def test_another_shop_starts_the_next_run(self) -> None:
        a, b = order(1), order(2, shop_id=2)
        assert shape(batch.plan([a, b], ROUTER)) == [
            ("order snapshots", [a.id]),
            ("order snapshots", [b.id]),
        ]

    def test_facts_of_one_order_share_a_run(self) -> None:
        shipped = claimed("fulfillments/create", fulfillment_payload(10, 1, shipment_status="in_transit"))
        moved = claimed("fulfillment_events/create", fulfillment_event_payload(20, 10, 1, "in_transit"))
        arrived = claimed("fulfillment_events/create", fulfillment_event_payload(21, 10, 1, "delivered"))
        assert shape(batch.plan([shipped, moved, arrived], ROUTER)) == [
            ("facts", [shipped.id, moved.id, arrived.id])
        ]

    def test_another_topic_ends_a_run(self) -> None:
        a, b = order(1), order(2)
        refund = claimed("refunds/create", {"id": 5, "order_id": 1})
        assert shape(batch.plan([a, refund, b], ROUTER)) == [
            ("order snapshots", [a.id]),
            ("single", refund.id, True),
            ("order snapshots", [b.id]),
        ]

    def test_without_runs_every_delivery_is_a_single(self) -> None:
        a, b = order(1), order(2)
        assert shape(batch.plan([a, b], ROUTER, runs=False)) == [
            ("single", a.id, True),
            ("single", b.id, True),
        ]

    def test_every_run_topic_leaves_its_figures_to_the_batch(self) -> None:
        for kind in batch.RUN_KINDS:
            assert kind.topics <= batch.DEFERRED_TOPICS, kind.name


class TestSingles:
    @pytest.mark.parametrize(
        ("topic", "payload", "deferred"),
        [
            ("customers/update", {"id": 7}, True),
            ("customers/delete", {"id": 7}, False),
            ("orders/delete", {"id": 7}, True),
            ("app/uninstalled", {"id": 1, "myshopify_domain": "shop1.myshopify.com"}, False),
            ("customers/data_request", {"customer": {"id": 7}}, False),
        ],
    )
    def test_deferred_or_settling_first(self, topic: str, payload: Any, deferred: bool) -> None:
        delivery = claimed(topic, payload)
        assert shape(batch.plan([delivery], ROUTER)) == [("single", delivery.id, deferred)]

    @pytest.mark.parametrize("topic", sorted(batch.BARRIER_TOPICS))
    def test_an_erasure_ends_the_plan(self, topic: str) -> None:
        before, after = order(1), order(2)
        erasure = claimed(topic, {"customer": {"id": 7}, "orders_to_redact": []})
        assert shape(batch.plan([before, erasure, after], ROUTER)) == [
            ("order snapshots", [before.id]),
            ("single", erasure.id, False),
        ]

    def test_a_bad_body_is_rejected_and_an_unknown_topic_ignored(self) -> None:
        bad, unknown, good = claimed("orders/create", b"{not json"), claimed("products/update", {}), order(3)
        assert shape(batch.plan([bad, unknown, good], ROUTER)) == [
            ("rejected", bad.id),
            ("ignored", unknown.id),
            ("order snapshots", [good.id]),
        ]

    def test_every_handled_topic_is_planned(self) -> None:
        """A new topic gets a decision: figures left to the batch, or settled first (a test that
        fails if a handled topic is in neither set is the place to make it)."""
        settling_first = {
            "customers/delete",
            "app/uninstalled",
            "customers/data_request",
            "customers/redact",
            "shop/redact",
        }
        assert ROUTER.topics == batch.DEFERRED_TOPICS | settling_first
